"""A FastAPI app with runlane: the management API under /runlane, an in-process worker from
the app's lifespan, and a page that triggers a report and shows its progress.

    export RUNLANE_STORE_URL=redis://127.0.0.1:6379/0   # or nothing: .runlane/runlane.db
    export RUNLANE_SECRET_KEY=$(runlane keys create)      # for the routes under /runlane
    uvicorn examples.fastapi_app.main:app --port 8000     # then open http://127.0.0.1:8000/
"""
