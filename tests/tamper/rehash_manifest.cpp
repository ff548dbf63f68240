// Test helper: rewrites a checkpoint manifest's manifest_hash to match its (edited) content, as anyone can, since
// the hash is no signature. Used by tests/tamper/ckpt_tampered_manifest.sh.
//   rehash_manifest MANIFEST_JSON
#include <fstream>
#include <iostream>
#include <sstream>

#include "traindx/checkpoint/manifest.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: rehash_manifest MANIFEST_JSON\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json manifest = nlohmann::json::parse(text.str());
  manifest["manifest_hash"] = traindx::checkpoint_manifest_hash(manifest);
  std::ofstream(argv[1]) << manifest.dump(2) << "\n";
  return 0;
}
