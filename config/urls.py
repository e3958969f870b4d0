from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import IsAdminUser

from config.api import STAFF_AUTHENTICATION
from ledger.views import SellerBalanceView, SellerDebtWriteOffView, SellerStatementView
from payouts.ops_views import healthz, metrics
from payouts.views import (
    ConnectWebhookView,
    OrderRefundView,
    OrderReleaseView,
    StripeWebhookView,
    TransferRetryView,
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(
            authentication_classes=STAFF_AUTHENTICATION, permission_classes=[IsAdminUser]
        ),
        name="openapi-schema",
    ),
    path("webhooks/stripe/", StripeWebhookView.as_view(), name="stripe-webhook"),
    path("webhooks/stripe/connect/", ConnectWebhookView.as_view(), name="stripe-connect-webhook"),
    path(
        "api/admin/transfers/<int:pk>/retry/",
        TransferRetryView.as_view(),
        name="transfer-retry",
    ),
    path("api/admin/orders/<int:pk>/refund/", OrderRefundView.as_view(), name="order-refund"),
    path("api/admin/orders/<int:pk>/release/", OrderReleaseView.as_view(), name="order-release"),
    path("api/admin/sellers/<int:pk>/balance/", SellerBalanceView.as_view(), name="seller-balance"),
    path(
        "api/admin/sellers/<int:pk>/statement/",
        SellerStatementView.as_view(),
        name="seller-statement",
    ),
    path(
        "api/admin/sellers/<int:pk>/debt/write-off/",
        SellerDebtWriteOffView.as_view(),
        name="seller-debt-write-off",
    ),
]
