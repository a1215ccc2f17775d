"""The HTTP API of `conveyor serve`: `create_app(services)` and what it is given.

    from conveyor.api import Services, Settings, create_app
    app = create_app(Services(store=..., settings=Settings(data_dir=...), ...))

Routes live in `conveyor.api.routes`, one module per resource; the runner
protocol is `routes.runners` (plus `routes.artifacts`).
"""

from conveyor.api.app import create_app
from conveyor.api.deps import Services, Settings

__all__ = ["Services", "Settings", "create_app"]
