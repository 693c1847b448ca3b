#include "dp_cache.h"
