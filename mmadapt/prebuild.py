"""Build DeepSpeed's JIT ops once at setup: concurrent first-use builds by several ranks can deadlock
on a stale lock file, and a build inside a timed run is a cost nobody asked for."""

from deepspeed.accelerator import get_accelerator


def main() -> None:
    acc = get_accelerator()
    names = ["FusedAdamBuilder"] + (["ShareMemCommBuilder"] if acc.device_name() == "cpu" else [])
    for name in names:
        builder = acc.create_op_builder(name)
        if builder is None or not builder.is_compatible(verbose=False):
            print(f"prebuild: {name} not available on {acc.device_name()}, skipped")
            continue
        builder.load(verbose=False)
        print(f"prebuild: {name} ready")


if __name__ == "__main__":
    main()
