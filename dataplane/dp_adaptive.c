#include "dp_adaptive.h"
