// Reads a zip held in memory (the ASiC-E that pop answers) with libzip, checking its consistency.
// Entries keep their order in the archive. Throws std::runtime_error naming what failed.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace bud::test {

// (name, bytes) in the archive's order.
std::vector<std::pair<std::string, std::string>> ZipEntriesInOrder(const std::string& bytes);
// name -> bytes.
std::map<std::string, std::string> ZipEntries(const std::string& bytes);

}  // namespace bud::test
