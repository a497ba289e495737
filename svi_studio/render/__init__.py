"""Rendering a project: event and plan types (events.py), one shot (shot.py), a job of shots (runner.py)."""
