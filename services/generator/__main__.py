"""python -m services.generator --host H --port P"""

from services.common.cli import run_service
from services.generator.server import build
from services.generator.settings import GeneratorSettings


def main() -> None:
    run_service(GeneratorSettings, build)


if __name__ == "__main__":
    main()
