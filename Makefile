# matrestore: `make demo` runs the main job on bundled data, `make test` runs the whole test suite.
# Works on a fresh Debian machine with Python 3.11: creates .venv, installs torch 2.13.0 (CPU build)
# first so that no multi-GB CUDA build is pulled in, then the package with its test extra.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
STAMP  := $(VENV)/.installed

# X11/xcb libraries that PyQt6's bundled Qt needs at run time (Debian names).
QT_LIBS := libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
	libxcb-xinerama0 libxcb-xinput0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 libegl1

.PHONY: demo test install sysdeps clean screenshot

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet torch==$(TORCH_VERSION)
	$(PIP) install --quiet -e ".[testing]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/matrestore demo --out demo_output

# System packages for the napari GUI tests (virtual X server and software OpenGL).
sysdeps:
	@if ! command -v xvfb-run >/dev/null 2>&1 || ! ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || ! ldconfig -p | grep -q libxkbcommon-x11; then \
		echo "installing xvfb and libgl1-mesa-dri (apt-get)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq xvfb xauth libgl1-mesa-dri >/dev/null && \
		{ DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(QT_LIBS) >/dev/null 2>&1 || \
		  echo "note: some Qt runtime libraries could not be installed: $(QT_LIBS)"; }; \
	fi

test: $(STAMP) sysdeps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo_output build dist src/*.egg-info .pytest_cache
