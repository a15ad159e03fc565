"""Facility sensors: one module per type (see `registry.py`), all read through kernel interfaces in sysfs or
gpiozero, so each is tested against a fake sysfs tree or mock pins."""

from edge_agent.sensors.base import Sensor, SensorEnv
from edge_agent.sensors.registry import build_sensor

__all__ = ["Sensor", "SensorEnv", "build_sensor"]
