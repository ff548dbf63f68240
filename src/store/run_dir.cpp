#include "traindx/store/run_store.h"
