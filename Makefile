# One entry point for set-up, tests, the book and the data. Every target installs what it needs.
#   make book   -- set up .venv and build the book into _build/html (the main job)
#   make test   -- set up .venv, then unit tests, nbval on every notebook, a gated book build and a
#                  headless-Chromium test of the built site (installs Debian's chromium if missing; needs root)
#   make data   -- regenerate every cached experiment in data/ from scratch
#   make bench  -- print the library's performance numbers
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BOOK_FLAGS := -W -n --keep-going --all
# A published build: `make book REPOSITORY_URL=https://github.com/OWNER/REPO [BRANCH=main]` adds the repository
# link and the Binder/Colab launch buttons (tools/book_config.py writes _config.launch.yml).
REPOSITORY_URL ?=
BRANCH ?= main
BOOK_CONFIG := $(if $(REPOSITORY_URL),--config _config.launch.yml,)
export EP_PROGRESS ?= 0
export PYTHONHASHSEED := 0

.PHONY: all setup test unit notebooks book book-gated site browser data verify-data bench lock clean execute

all: book

setup: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; assert (3, 10) <= v <= (3, 12), f"Python 3.10-3.12 needed, found {sys.version.split()[0]}"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
	touch $(STAMP)

test: setup unit notebooks book-gated site

unit: setup
	$(BIN)/python -m pytest tests

notebooks: setup
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg notebooks

book-gated: setup
	rm -rf _build/html _build/.doctrees
	$(BIN)/jupyter-book build $(BOOK_FLAGS) .

# Browser test of the built book: every page offline, math typeset, images, links, no external requests.
site: setup browser
	$(BIN)/python -m pytest site_tests

browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

book: setup
	$(if $(REPOSITORY_URL),$(BIN)/python tools/book_config.py $(REPOSITORY_URL) $(BRANCH))
	$(BIN)/jupyter-book build $(BOOK_FLAGS) $(BOOK_CONFIG) .
	@echo "Open _build/html/index.html"

data: setup
	$(BIN)/python -m embedding_principle regenerate
	$(BIN)/python -m embedding_principle report

verify-data: setup
	$(BIN)/python -m embedding_principle verify

bench: setup
	$(BIN)/python benchmarks/bench_hessian.py
	$(BIN)/python benchmarks/bench_training.py

clean:
	rm -rf _build

# Re-resolve requirements.txt on every supported Python into requirements-lock.txt (needs python3.10/3.11/3.12).
lock:
	for v in 3.10 3.11 3.12; do python$$v -m pip install --dry-run --ignore-installed --quiet --report /tmp/ep-report$$v.json -r requirements.txt || exit 1; done
	$(PYTHON) tools/make_lock.py /tmp/ep-report3.10.json /tmp/ep-report3.11.json /tmp/ep-report3.12.json > requirements-lock.txt

# Re-execute every notebook in place (fresh kernel, top to bottom) before committing it.
execute: setup
	$(BIN)/python tools/execute_notebooks.py notebooks/*.ipynb
