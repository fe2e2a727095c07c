"""python -m services.exporter --host H --port P"""

from services.common.cli import run_service
from services.exporter.server import build
from services.exporter.settings import ExporterSettings


def main() -> None:
    run_service(ExporterSettings, build)


if __name__ == "__main__":
    main()
