from django.urls import include, path
from orders import views

urlpatterns = [
    path("", views.index, name="index"),
    path("orders/<int:pk>/", views.order, name="order"),
    path("orders/<int:pk>/status.json", views.order_status, name="order-status"),
    path("runlane/", include("runlane.frameworks.django.urls")),
]
