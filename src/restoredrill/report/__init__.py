"""Reports: the terminal summary, the drill report (JUnit), the HTML page, history and metrics."""
