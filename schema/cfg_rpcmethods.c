#include "cfg_rpcmethods.h"
