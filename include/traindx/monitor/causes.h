#pragma once
/// Which findings follow from which. Many rules see the same fault from different sides: an unscaled regression
/// target makes the updates huge (lr_too_high) and the loss diverge (loss_diverging); a reader wants the cause
/// first and the symptoms under it. The table below says, for each symptom rule, which rules can cause it, most
/// specific first. It is acyclic (a test checks it), so following caused_by always ends at a root.
///
/// A cause concerning one layer explains a symptom in the same layer or a symptom of the whole run; between two
/// different layers the table cannot know the topology, so it links nothing (the doctor links those itself: e.g.
/// a layer initialised far too small and the ReLUs right after it).
#include <string>
#include <vector>

#include "traindx/monitor/finding.h"

namespace traindx {

/// A symptom and the rules that can cause it, most specific first.
struct CauseLink {
  std::string symptom;
  std::vector<std::string> causes;
};

/// The whole table.
const std::vector<CauseLink>& known_causes();

/// The rules that can cause `symptom` (empty when it is only ever a root).
const std::vector<std::string>& causes_of(const std::string& symptom);

/// Sets caused_by on each finding that has none and whose table lists a cause present among `findings` (the first
/// listed one that is present wins). A cause rises to the highest severity among the findings that follow from it:
/// the cause of a critical symptom is itself critical. Findings are changed in place.
void link_known_causes(std::vector<Finding>& findings);

}  // namespace traindx
