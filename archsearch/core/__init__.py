"""What every layer uses: located errors, the pydantic helpers both file kinds declare with, text helpers, Ctrl-C at
safe points."""
