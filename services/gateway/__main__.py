"""python -m services.gateway --host H --port P"""

from services.common.cli import run_service
from services.gateway.server import build
from services.gateway.settings import GatewaySettings


def main() -> None:
    run_service(GatewaySettings, build)


if __name__ == "__main__":
    main()
