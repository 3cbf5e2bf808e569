# GAN Cocktail on the bundled example models: rooting, averaging, union fine-tune, per-domain FID.
#
#   make -f recipes/cocktail.mk cocktail EXAMPLES=examples OUT=out/cocktail
#
# Every step is a file target, so a second `make` does nothing and an interrupted one picks up
# where it stopped (training steps continue from their run folders' last snapshots).
# Variables: EXAMPLES (folder with face.st, cat.st, dog.st), OUT (output folder), GANCRAFT
# (the command), COCKTAIL_ROOT / COCKTAIL_SOURCES (domain names), COCKTAIL_ROOT_KIMG (rooting, per
# source), COCKTAIL_KIMG (union fine-tune), COCKTAIL_FLAGS (options of both; the commands' defaults
# are the official union_gan config), FID_FLAGS (e.g. --weights pt_inception.pth).

EXAMPLES ?= examples
OUT ?= out/cocktail
GANCRAFT ?= gancraft
COCKTAIL_ROOT ?= face
COCKTAIL_SOURCES ?= cat dog
COCKTAIL_KIMG ?= 20
COCKTAIL_ROOT_KIMG ?= 20
COCKTAIL_FLAGS ?= --quiet
FID_FLAGS ?= --n 2000

COCKTAIL_DOMAINS := $(COCKTAIL_ROOT) $(COCKTAIL_SOURCES)
COCKTAIL_ROOTED := $(foreach d,$(COCKTAIL_DOMAINS),$(OUT)/rooted/$(d).st)
COCKTAIL_FID := $(foreach d,$(COCKTAIL_DOMAINS),$(OUT)/fid-$(d).json)

.PHONY: cocktail
cocktail: $(COCKTAIL_FID)

# Stage 1, as the official code: the root gets one class per domain (written as rooted/ROOT.st, the
# common start), and a copy of it is trained toward each source on the source's images, labelled
# with the source's class.
$(COCKTAIL_ROOTED) &: $(foreach d,$(COCKTAIL_DOMAINS),$(EXAMPLES)/$(d).st)
	mkdir -p $(OUT)
	$(GANCRAFT) root --root $(EXAMPLES)/$(COCKTAIL_ROOT).st $(foreach s,$(COCKTAIL_SOURCES),--source $(EXAMPLES)/$(s).st) \
	  -o $(OUT)/rooted --kimg $(COCKTAIL_ROOT_KIMG) $(COCKTAIL_FLAGS) $(if $(wildcard $(OUT)/rooted),--resume $(OUT)/rooted)

# Stage 2a: the root and the rooted models share one weight space and class table; average them.
$(OUT)/avg.st: $(COCKTAIL_ROOTED)
	$(GANCRAFT) average $^ -o $@ --force

# Stage 2b: one class-conditional union GAN, trained on every source model's images.
$(OUT)/union.st: $(OUT)/avg.st $(foreach d,$(COCKTAIL_DOMAINS),$(EXAMPLES)/$(d).st)
	$(GANCRAFT) finetune $< $(foreach d,$(COCKTAIL_DOMAINS),--domain $(d)=$(EXAMPLES)/$(d).st) -o $@ \
	  --run-dir $(OUT)/union-run --kimg $(COCKTAIL_KIMG) $(COCKTAIL_FLAGS) \
	  $(if $(wildcard $(OUT)/union-run/run.json),--resume $(OUT)/union-run)

# Per-domain FID of the union model against the source model it learnt that domain from.
$(OUT)/fid-%.json: $(OUT)/union.st $(EXAMPLES)/%.st
	$(GANCRAFT) fid $(OUT)/union.st $(EXAMPLES)/$*.st --domain $* --json $(FID_FLAGS) > $@.tmp
	mv $@.tmp $@
