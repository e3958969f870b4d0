from django.contrib import admin
from django.urls import path

from payouts.views import OrderRefundView, StripeWebhookView, TransferRetryView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/stripe/", StripeWebhookView.as_view(), name="stripe-webhook"),
    path(
        "api/admin/transfers/<int:pk>/retry/",
        TransferRetryView.as_view(),
        name="transfer-retry",
    ),
    path("api/admin/orders/<int:pk>/refund/", OrderRefundView.as_view(), name="order-refund"),
]
