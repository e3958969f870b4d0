"""The staff API cannot be driven by another site through a staff member's browser: no Basic
challenge for the browser to answer and remember, a session needs its CSRF token, and money
endpoints take JSON only (a cross-site HTML form can send none). API clients authenticate with
a bearer token, which no browser attaches on its own."""

import base64

import pytest
from django.contrib.auth.models import Permission
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from rest_framework.authtoken.models import Token

from marketplace.models import Refund
from tests.builders import paid_order
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
EVIL = "https://evil.example"


@pytest.fixture
def refunder(db):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="refund_order"))
    return user


@pytest.fixture
def order(sandbox, stripe_client):
    order, _ = paid_order(stripe_client, [2000])
    return order


def refund_url(order) -> str:
    return f"/api/admin/orders/{order.pk}/refund/"


def browser() -> Client:
    """A browser: Django checks its CSRF token, as for every real request."""
    return Client(enforce_csrf_checks=True)


def assert_nothing_refunded(sandbox, order) -> None:
    assert sandbox.calls("refunds.create") == []
    assert not Refund.objects.filter(order=order).exists()


def test_a_cross_site_form_post_with_remembered_basic_credentials_refunds_nothing(
    sandbox, order, refunder
):
    credentials = base64.b64encode(f"{refunder.username}:{PASSWORD}".encode()).decode()

    # What a browser that once answered a Basic prompt sends along with another site's form.
    response = browser().post(
        refund_url(order),
        {"amount": "500"},
        HTTP_AUTHORIZATION=f"Basic {credentials}",
        HTTP_ORIGIN=EVIL,
        HTTP_REFERER=f"{EVIL}/",
    )

    assert response.status_code in (401, 403), response.content
    assert_nothing_refunded(sandbox, order)


def test_a_cross_site_form_post_riding_the_staff_session_refunds_nothing(sandbox, order, refunder):
    client = browser()
    client.force_login(refunder)

    response = client.post(refund_url(order), {"amount": "500"}, HTTP_ORIGIN=EVIL)

    assert response.status_code == 403, response.content
    assert "CSRF" in response.json()["detail"]
    assert_nothing_refunded(sandbox, order)


def test_a_form_encoded_refund_is_refused_even_with_the_session_and_its_csrf_token(
    sandbox, order, refunder
):
    client = browser()
    client.force_login(refunder)
    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token

    response = client.post(refund_url(order), {"amount": "500"}, HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 415, response.content
    assert_nothing_refunded(sandbox, order)


def test_a_json_refund_with_the_session_and_its_csrf_token_is_made(sandbox, order, refunder):
    client = browser()
    client.force_login(refunder)
    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token

    response = client.post(
        refund_url(order), {"amount": 500}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )

    assert response.status_code == 202, response.content
    assert len(sandbox.calls("refunds.create")) == 1


def test_an_unauthenticated_request_gets_no_basic_challenge(sandbox, order):
    response = browser().post(refund_url(order), {}, content_type="application/json")

    assert response.status_code == 401, response.content
    assert not response.headers.get("WWW-Authenticate", "").lower().startswith("basic")
    assert_nothing_refunded(sandbox, order)


def test_an_api_client_refunds_with_its_bearer_token_and_json(sandbox, order, refunder):
    token = Token.objects.create(user=refunder)

    response = browser().post(
        refund_url(order),
        {"amount": 500},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token.key}",
    )

    assert response.status_code == 202, response.content
    assert len(sandbox.calls("refunds.create")) == 1
    assert Refund.objects.get(order=order).amount == 500
