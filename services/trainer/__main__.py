"""python -m services.trainer --host H --port P"""

from services.common.cli import run_service
from services.trainer.server import build
from services.trainer.settings import TrainerSettings


def main() -> None:
    run_service(TrainerSettings, build)


if __name__ == "__main__":
    main()
