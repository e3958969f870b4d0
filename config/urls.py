from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.urls import path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import IsAdminUser

from approvals.views import ApprovalApproveView, ApprovalListView, ApprovalRejectView
from config.api import STAFF_AUTHENTICATION
from console.ops_views import healthz, metrics
from console.read_api import NeedsAttentionView, TransferListView
from ledger.views import SellerBalanceView, SellerDebtWriteOffView, SellerStatementView
from payouts.http.payout_views import (
    SellerPayoutDetailView,
    SellerPayoutListView,
    SellerPayoutReconcileView,
)
from payouts.http.policy_views import SellerPolicyView, SellerRiskReleaseView
from payouts.http.views import (
    AuditExportView,
    ConnectWebhookView,
    OrderRefundView,
    OrderReleaseView,
    ReserveReleaseResendView,
    StripeWebhookView,
    TransferRequeueView,
    TransferRetryView,
)

urlpatterns = [
    # The service's only pages are the console's: "/" and the admin's "View site" open it.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
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
    # Swagger UI over that schema, for staff: anyone else is sent to the admin's login.
    path(
        "api/docs/",
        staff_member_required(
            SpectacularSwaggerView.as_view(
                url_name="openapi-schema", permission_classes=[IsAdminUser]
            )
        ),
        name="api-docs",
    ),
    path("webhooks/stripe/", StripeWebhookView.as_view(), name="stripe-webhook"),
    path("webhooks/stripe/connect/", ConnectWebhookView.as_view(), name="stripe-connect-webhook"),
    path("api/admin/transfers/", TransferListView.as_view(), name="transfer-list"),
    path("api/admin/needs-attention/", NeedsAttentionView.as_view(), name="needs-attention"),
    path(
        "api/admin/transfers/<int:pk>/retry/",
        TransferRetryView.as_view(),
        name="transfer-retry",
    ),
    path(
        "api/admin/transfers/<int:pk>/requeue/",
        TransferRequeueView.as_view(),
        name="transfer-requeue",
    ),
    path(
        "api/admin/reserve-releases/<int:pk>/resend/",
        ReserveReleaseResendView.as_view(),
        name="reserve-release-resend",
    ),
    path("api/admin/orders/<int:pk>/refund/", OrderRefundView.as_view(), name="order-refund"),
    path("api/admin/orders/<int:pk>/release/", OrderReleaseView.as_view(), name="order-release"),
    path("api/admin/sellers/<int:pk>/policy/", SellerPolicyView.as_view(), name="seller-policy"),
    path(
        "api/admin/sellers/<int:pk>/risk-release/",
        SellerRiskReleaseView.as_view(),
        name="seller-risk-release",
    ),
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
    path(
        "api/admin/sellers/<int:pk>/payouts/",
        SellerPayoutListView.as_view(),
        name="seller-payouts",
    ),
    path(
        "api/admin/sellers/<int:pk>/payouts/<str:stripe_payout_id>/",
        SellerPayoutDetailView.as_view(),
        name="seller-payout",
    ),
    path(
        "api/admin/sellers/<int:pk>/payouts/<str:stripe_payout_id>/reconcile/",
        SellerPayoutReconcileView.as_view(),
        name="seller-payout-reconcile",
    ),
    path("api/admin/approvals/", ApprovalListView.as_view(), name="approvals"),
    path(
        "api/admin/approvals/<int:pk>/approve/",
        ApprovalApproveView.as_view(),
        name="approval-approve",
    ),
    path(
        "api/admin/approvals/<int:pk>/reject/",
        ApprovalRejectView.as_view(),
        name="approval-reject",
    ),
    path("api/admin/audit/", AuditExportView.as_view(), name="audit-export"),
]
