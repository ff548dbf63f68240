#pragma once
/// Umbrella header: everything traindx offers to a user's own LibTorch program.
#include "traindx/core/config.h"
#include "traindx/core/environment.h"
#include "traindx/core/error.h"
#include "traindx/data/data.h"
#include "traindx/model/model.h"
#include "traindx/monitor/monitor.h"
#include "traindx/store/run_store.h"
#include "traindx/train/objective.h"
#include "traindx/train/trainer.h"
