"""`python -m cli`: the same as the `iristrack` command (tests run it with the interpreter under test)."""

from cli import main

main(prog_name="iristrack")
