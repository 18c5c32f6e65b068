"""``python -m longreward`` runs the CLI."""

from longreward.cli import app

if __name__ == "__main__":
    app()
