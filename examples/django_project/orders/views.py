from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

import runlane
from orders.models import Order
from orders.tasks import fulfil


@require_http_methods(["GET", "POST"])
def index(request):
    if request.method == "POST":
        with transaction.atomic():  # (ATOMIC_REQUESTS would do the same for the whole view)
            order = Order.objects.create(
                item=request.POST.get("item", "book"),
                quantity=int(request.POST.get("quantity", 3)),
            )
            # created when the transaction commits: the worker always finds the row
            handle = fulfil.trigger({"order_id": order.pk}, tags=[f"order:{order.pk}"])
            order.run_id = handle.id
            order.save(update_fields=["run_id"])
        return redirect("order", pk=order.pk)
    return render(request, "orders/index.html", {"orders": Order.objects.order_by("-pk")[:10]})


def _status(order):
    run = runlane.runs.retrieve(order.run_id)
    return {
        "order": order.pk,
        "order_status": order.status,
        "run": run.id,
        "run_status": run.status.value,
        "progress": run.metadata.get("progress", 0),
    }


def order(request, pk):
    item = get_object_or_404(Order, pk=pk)
    return render(request, "orders/order.html", {"order": item, "status": _status(item)})


def order_status(request, pk):
    return JsonResponse(_status(get_object_or_404(Order, pk=pk)))
