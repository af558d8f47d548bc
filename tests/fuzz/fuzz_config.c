/*
 * libFuzzer harness: the whole configuration file, as a control client's
 * `check`/`reload` text would reach config_load_text: every key, lists,
 * ranges, targets, the daemon group. The input must come back as a
 * configuration or as errors; a crash, a leak, undefined behaviour or a
 * message without its line is a finding.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* Larger than any sensible file, small enough to keep each run quick. */
#define FUZZ_CONFIG_MAX (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	struct config_errors errs = { 0 };
	char *text;

	if (size > FUZZ_CONFIG_MAX)
		return -1; /* not added to the corpus */
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (config_load_text("fuzz", text, size, &cfg, &errs) == 0) {
		if (errs.count)
			abort(); /* accepted, yet with errors */
		config_free(&cfg);
	} else {
		if (!errs.count)
			abort(); /* refused without a word */
		for (size_t i = 0; i < errs.count; i++)
			if (strncmp(errs.msgs[i], "fuzz", 4) != 0)
				abort(); /* a message that does not name the input */
	}
	config_errors_free(&errs);
	free(text);
	return 0;
}
