#include "alloc.h"

#include <stdlib.h>

void *alloc_zeroed(size_t size)
{
	return calloc(1, size);
}
