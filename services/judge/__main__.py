"""python -m services.judge --host H --port P"""

from services.common.cli import run_service
from services.judge.server import build
from services.judge.settings import JudgeSettings


def main() -> None:
    run_service(JudgeSettings, build)


if __name__ == "__main__":
    main()
