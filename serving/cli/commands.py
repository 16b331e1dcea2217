"""Imports every command module so that their commands register on the app."""

from serving.cli import (
    data_commands,  # noqa: F401
    demo_commands,  # noqa: F401
    features_commands,  # noqa: F401
    generate_commands,  # noqa: F401
    serve_commands,  # noqa: F401
    train_commands,  # noqa: F401
)
