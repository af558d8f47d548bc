#include "stats.h"

void stats_add(struct rule_stats *dst, const struct rule_counters *src)
{
#define STATS_ADD_ONE(name) dst->name += STAT_GET(src, name);
	STATS_FIELDS(STATS_ADD_ONE)
#undef STATS_ADD_ONE
}

void stats_sum(struct rule_stats *dst, const struct rule_stats *src)
{
#define STATS_SUM_ONE(name) dst->name += src->name;
	STATS_FIELDS(STATS_SUM_ONE)
#undef STATS_SUM_ONE
}
