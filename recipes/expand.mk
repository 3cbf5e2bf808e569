# Domain expansion on the bundled example models: the face model absorbs the cat and dog models.
#
#   make -f recipes/expand.mk expand EXAMPLES=examples OUT=out/expand
#
# The example models were trained from scratch, so cat and dog are not fine-tuned children of
# face; a `model` task only needs "same z -> that model's image", so they serve as targets as
# they are (a harder job than a true child, which differs from the parent only in style).
# Every step is a file target: a second `make` does nothing, an interrupted expansion resumes
# from its run folder's last snapshot.
# Variables: EXAMPLES (folder with face.st, cat.st, dog.st), OUT, GANCRAFT, PYTHON (the interpreter
# gancraft is installed in: it renders the real images), EXPAND_PARENT, EXPAND_TARGETS, EXPAND_KIMG,
# EXPAND_FLAGS, EXPAND_REAL_N, EXPAND_REPORT_FLAGS (default: the report's features from
# the bundled toy-domain network, which runs anywhere; `--report-extractor inception` after
# `make weights` for the paper's Inception). `expand`'s defaults are the official code's (batch 32
# split over the tasks, lr 0.001, EMA 10 kimg, source adversarial loss with D trained, random noise);
# the directions come from every modulation but the toRGBs after 4x4, as the official code stacks them,
# and the two whose measured image change is least are used (`--directions dormant`).
# The report scores the base subspace against the parent's samples and, as the paper's Sec. 4.5
# does, against real images of the parent's domain beside the parent itself: EXPAND_REAL_N toy
# renders on a seed no model was trained on.

EXAMPLES ?= examples
OUT ?= out/expand
GANCRAFT ?= gancraft
PYTHON ?= python3
EXPAND_PARENT ?= face
EXPAND_TARGETS ?= cat dog
EXPAND_KIMG ?= 8
EXPAND_FLAGS ?= --distance 20 --directions dormant --quiet
EXPAND_REPORT_FLAGS ?= --report-extractor $(EXAMPLES)/toy-features.pt
EXPAND_REAL_N ?= 1000
EXPAND_REAL := $(OUT)/real-$(EXPAND_PARENT)

EXPAND_MODEL := $(OUT)/$(EXPAND_PARENT)-expanded.st
EXPAND_DOMAINS := base $(EXPAND_TARGETS)
EXPAND_TASKS := $(foreach t,$(EXPAND_TARGETS),--task $(t):model:$(EXAMPLES)/$(t).st)
EXPAND_GRIDS := $(foreach d,$(EXPAND_DOMAINS),$(OUT)/samples-$(d).png)
EXPAND_EMPTY :=
EXPAND_SPACE := $(EXPAND_EMPTY) $(EXPAND_EMPTY)
EXPAND_COMMA := ,

.PHONY: expand
expand: $(OUT)/report.txt $(EXPAND_GRIDS) $(OUT)/samples-$(subst $(EXPAND_SPACE),+,$(EXPAND_TARGETS)).png \
        $(OUT)/traversal.mp4

$(OUT)/$(EXPAND_PARENT)-sefa.st: $(EXAMPLES)/$(EXPAND_PARENT).st
	mkdir -p $(OUT)
	$(GANCRAFT) sefa $< --layers all -o $@ --force

$(EXPAND_REAL)/factors.csv:
	$(PYTHON) -m gancraft.toy $(EXPAND_PARENT) $(EXPAND_REAL_N) --seed 777 -o $(EXPAND_REAL) --force >/dev/null

# the report (before/after table) is written by the same run as the model; a finished run
# resumed only recomputes it
$(EXPAND_MODEL) $(OUT)/report.txt &: $(EXAMPLES)/$(EXPAND_PARENT).st $(OUT)/$(EXPAND_PARENT)-sefa.st \
        $(foreach t,$(EXPAND_TARGETS),$(EXAMPLES)/$(t).st) $(EXPAND_REAL)/factors.csv
	$(GANCRAFT) expand $< --sefa $(OUT)/$(EXPAND_PARENT)-sefa.st $(EXPAND_TASKS) --kimg $(EXPAND_KIMG) \
	  $(EXPAND_FLAGS) --run-dir $(OUT)/expand-run $(if $(wildcard $(OUT)/expand-run/run.json),--resume) \
	  --report $(OUT)/report.txt --report-real $(EXPAND_REAL) $(EXPAND_REPORT_FLAGS) -o $(EXPAND_MODEL) --force

$(OUT)/samples-%.png: $(EXPAND_MODEL)
	$(GANCRAFT) sample $< --domain $* --seeds 0-15 -o $(OUT)/samples-$* --grid $@ --force >/dev/null

# one cell per seed, morphing base -> each new domain
$(OUT)/traversal.mp4: $(EXPAND_MODEL)
	$(GANCRAFT) render $< --domains $(subst $(EXPAND_SPACE),$(EXPAND_COMMA),$(EXPAND_DOMAINS)) --seeds 0-3 \
	  --frames 60 -o $@ --force >/dev/null
