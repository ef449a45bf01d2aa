"""Build DeepSpeed's JIT ops once at setup (`make setup`), so that no timed run pays for a build and
ranks never compile concurrently (see mmadapt/ops.py for the locking and the ninja trap)."""

from .ops import load_ops


def main() -> None:
    for name in load_ops():
        print(f"prebuild: {name} ready")


if __name__ == "__main__":
    main()
