"""kumolab: cloud lab environments on AWS or on a local emulator."""
