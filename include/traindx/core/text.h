#pragma once
/// Small string helpers shared by config, data and CLI code.
#include <string>
#include <string_view>
#include <vector>

namespace traindx {

/// Levenshtein distance between two strings.
size_t edit_distance(std::string_view a, std::string_view b);

/// The candidate closest to `word` by edit distance (first on ties); empty when there are no candidates.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

/// `s` without leading and trailing white space.
std::string trim(std::string_view s);

/// Splits on `sep`, keeping empty fields.
std::vector<std::string> split(std::string_view s, char sep);

/// Lower-cased copy (ASCII).
std::string to_lower(std::string_view s);

}  // namespace traindx
