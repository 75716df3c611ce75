"""``python launch_runner.py FILE name:=value ...``: what ``ros2 launch`` does with a launch file
(ros2cli is not installed here): one LaunchService in the main thread, so Ctrl-C (SIGINT) is handled
by launch itself."""
import sys

from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchService


def main() -> int:
    path, arguments = sys.argv[1], [a.split(":=", 1) for a in sys.argv[2:]]
    service = LaunchService(argv=sys.argv[2:])
    service.include_launch_description(
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=[tuple(a) for a in arguments]))
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
