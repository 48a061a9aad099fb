import os

from django.urls import include, path
from orders import views

from runlane.contrib.webhooks import receive

# Stripe's deliveries: the signature checked with the endpoint's signing secret, then
# `orders.stripe-event` triggered, keyed by the event's id (a redelivery answers the same run)
stripe = receive(
    "stripe",
    secret=os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_example_only"),
    task="orders.stripe-event",
)

urlpatterns = [
    path("", views.index, name="index"),
    path("orders/<int:pk>/", views.order, name="order"),
    path("orders/<int:pk>/status.json", views.order_status, name="order-status"),
    path("runlane/", include("runlane.frameworks.django.urls")),
    path("webhooks/stripe/", stripe.django_view()),
]
