"""The API's docs at /api/docs/: Swagger UI over /api/schema/, for staff only, with every file
served by the app itself (drf-spectacular-sidecar), none from a CDN."""

import re

import pytest
from django.contrib.staticfiles import finders

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_anyone_but_staff_is_sent_to_the_admins_login(client):
    anonymous = client.get("/api/docs/")
    client.force_login(UserFactory(is_staff=False))
    not_staff = client.get("/api/docs/")

    for response in (anonymous, not_staff):
        assert response.status_code == 302
        assert response.url.startswith("/admin/login/?next=/api/docs/")


def test_staff_get_swagger_ui_over_the_schema_with_every_file_served_here(client):
    client.force_login(UserFactory(is_staff=True))

    response = client.get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/schema/" in page
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', page)
    assert any("swagger-ui-bundle.js" in asset for asset in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), asset
