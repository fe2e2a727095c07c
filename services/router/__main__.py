"""python -m services.router --host H --port P"""

from services.common.cli import run_service
from services.router.server import build
from services.router.settings import RouterSettings


def main() -> None:
    run_service(RouterSettings, build)


if __name__ == "__main__":
    main()
