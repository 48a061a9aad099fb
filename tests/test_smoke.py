import runlane
from tests.helpers import wait_final


def test_trigger_and_complete(worker):
    @runlane.task(id="smoke")
    def smoke(payload, ctx):
        return {"echo": payload, "attempt": ctx.attempt.number}

    handle = smoke.trigger({"x": 1})
    run = wait_final(handle)
    assert run.status == "COMPLETED"
    assert run.output == {"echo": {"x": 1}, "attempt": 1}
