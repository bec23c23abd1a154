"""One module per outside system; each is the only code that talks to it."""
