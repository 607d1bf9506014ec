# make run: install, initialise, load the demo, train, serve on 127.0.0.1:8000.
# make test: the whole suite, on SQLite and then on PostgreSQL.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The PostgreSQL server the suite runs on; each run creates and drops a database of its own there.
# The SQLite run also checks what only a server can do (dropped connections) on it.
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
export PG_URL
export OPENBLAS_NUM_THREADS := 1

.PHONY: run not-serving test test-sqlite test-postgres install lock lint bench docs clean

# One clear line instead of pip refusing the project deep in an install, or a half-made .venv that the
# next make would reuse: an interpreter older than 3.11, or Debian's Python without its venv package.
$(BIN)/activate:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "stickyloop: needs Python 3.11 or newer; $(PYTHON) is $$(command -v $(PYTHON) >/dev/null && $(PYTHON) --version 2>&1 || echo 'not found') (try: make run PYTHON=python3.11)" >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "stickyloop: $(PYTHON) -m venv failed; on Debian or Ubuntu install the python3-venv package" >&2; exit 1; }

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/activate
	$(BIN)/pip install --quiet --upgrade pip
	@# setuptools warns that an editable install's folders may shadow the package: here they are the package.
	PYTHONWARNINGS='ignore:Editable installation:UserWarning' $(BIN)/pip install --quiet -e '.[dev]' -c constraints.txt
	touch $@

# After changing pyproject.toml's dependencies, or to move to newer releases: install the newest within its
# ranges, run make test, and keep the versions it passed with.
lock: $(BIN)/activate
	PYTHONWARNINGS='ignore:Editable installation:UserWarning' $(BIN)/pip install --quiet --upgrade -e '.[dev]'
	(sed -n '1,3p' constraints.txt; $(BIN)/pip freeze --exclude-editable) > constraints.new && mv constraints.new constraints.txt

install: $(VENV)/.installed

# The console's session cookies are signed with SECRET_KEY: made once, kept in instance/ (git-ignored)
# and shared by every worker, so sign-ins survive restarts; the echoed command names the file, not the key.
# A second make run while this folder's server runs would revoke the keys pasted from it (they share the
# database), on any port: the server's pid file says whether it runs. A pid file whose server has gone is
# removed, since gunicorn would refuse to start over it. The port is checked too, before the demo loads.
RUN_PID_FILE ?= instance/gunicorn.pid
export RUN_PID_FILE
define NOT_SERVING
import os, socket, subprocess, sys
def command_of(pid):  # what the process runs: "" if there is none, None if this system cannot say
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except FileNotFoundError:
        if os.path.isdir("/proc"):
            return ""
    except OSError:
        pass
    try:  # no /proc (macOS): ps answers there
        asked = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return asked.stdout if asked.returncode == 0 else ""
path = os.environ["RUN_PID_FILE"]
try:
    pid = int(open(path).read().strip())
except (OSError, ValueError):
    pid = None
if pid is not None:
    command = command_of(pid) if pid > 0 else ""
    if command is None or "gunicorn" in command:
        sys.exit(f"stickyloop: this folder's server from an earlier make run is still running (gunicorn pid {pid}); a second one would revoke the keys printed for it. Stop it with Ctrl-C in its terminal or `kill {pid}`, then make run again (if no such server runs, delete {path})")
    os.remove(path)  # its server was killed before it could remove the file, and the pid may since name another program
host, _, port = os.environ.get("BIND", "127.0.0.1:8000").rpartition(":")
try:
    with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1):
        sys.exit(f"stickyloop: {host}:{port} is already in use; stop what serves there (a server from an earlier make run stops with Ctrl-C in its terminal), or serve elsewhere with BIND, e.g. `BIND=127.0.0.1:8001 make run`")
except (OSError, ValueError):
    pass
endef
export NOT_SERVING

# Whether make run may start: not while this folder's server runs, nor on an address in use.
not-serving: install
	@$(BIN)/python -c "$$NOT_SERVING"

run: not-serving
	$(BIN)/flask --app wsgi init-db
	$(BIN)/flask --app wsgi demo
	$(BIN)/flask --app wsgi train --unless-active
	@mkdir -p instance && test -s instance/secret_key || (umask 077 && $(BIN)/python -c 'import secrets; print(secrets.token_hex(32))' > instance/secret_key)
	@$(BIN)/flask --app wsgi demo-keys --base-url http://$${BIND:-127.0.0.1:8000}
	SECRET_KEY=$$(cat instance/secret_key) exec $(BIN)/gunicorn -c service/gunicorn_conf.py --pid $(RUN_PID_FILE) wsgi:app

lint: install
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: install lint test-sqlite test-postgres

test-sqlite: install
	@bash .ci/ensure-postgres
	$(BIN)/pytest

test-postgres: install
	@bash .ci/ensure-postgres
	DATABASE_URL=$(PG_URL) $(BIN)/pytest

bench: install
	@[ -n "$$BENCH_DATABASE_URL" ] || bash .ci/ensure-postgres
	$(BIN)/python bench/run_all.py --database both

# docs/http-reference.md, generated from the OpenAPI document (tests/http/test_docs.py checks it is current).
docs: install
	$(BIN)/python docs/generate_reference.py

clean:
	rm -rf $(VENV) instance build *.egg-info
