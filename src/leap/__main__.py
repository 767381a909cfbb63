from leap.cli import app

app(prog_name="leap")
