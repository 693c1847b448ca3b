#include "dp_cachekey.h"
