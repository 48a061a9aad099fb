"""Tasks of the Redis example: runs kept in Redis, executed by ``runlane worker`` processes on
any number of machines (runlane's own Redis broker).

    export RUNLANE_STORE_URL=redis://127.0.0.1:6379/0 RUNLANE_ENV=prod
    runlane worker examples.redis_project.tasks --concurrency 4
    python -m examples.redis_project.trigger
"""

import runlane


@runlane.task(id="resize-image", retry={"max_attempts": 3, "min_timeout_in_ms": 100})
def resize_image(payload: dict, ctx: runlane.Context) -> dict:
    runlane.metadata.set("attempt", ctx.attempt.number)
    width = payload["width"] // 2
    runlane.logger.info("resized", image=payload["image"], width=width)
    return {"image": payload["image"], "width": width}
