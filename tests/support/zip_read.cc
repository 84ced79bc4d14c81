#include "tests/support/zip_read.h"

#include <zip.h>

#include <stdexcept>

namespace bud::test {

std::vector<std::pair<std::string, std::string>> ZipEntriesInOrder(const std::string& bytes) {
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &err);
  if (src == nullptr)
    throw std::runtime_error("zip: no source: " + std::string(zip_error_strerror(&err)));
  zip_t* za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err);
  if (za == nullptr) {
    std::string why = zip_error_strerror(&err);
    zip_source_free(src);
    throw std::runtime_error("zip: cannot open (" + std::to_string(bytes.size()) +
                             " bytes): " + why);
  }
  std::vector<std::pair<std::string, std::string>> out;
  std::string failure;
  for (zip_int64_t i = 0; i < zip_get_num_entries(za, 0) && failure.empty(); ++i) {
    zip_stat_t st;
    if (zip_stat_index(za, static_cast<zip_uint64_t>(i), 0, &st) != 0) {
      failure = "cannot stat entry " + std::to_string(i);
      break;
    }
    zip_file_t* f = zip_fopen_index(za, static_cast<zip_uint64_t>(i), 0);
    if (f == nullptr) {
      failure = std::string("cannot open entry ") + st.name;
      break;
    }
    std::string data(st.size, '\0');
    if (zip_fread(f, data.data(), st.size) != static_cast<zip_int64_t>(st.size))
      failure = std::string("short read of entry ") + st.name;
    zip_fclose(f);
    out.emplace_back(st.name, std::move(data));
  }
  zip_close(za);
  if (!failure.empty()) throw std::runtime_error("zip: " + failure);
  return out;
}

std::map<std::string, std::string> ZipEntries(const std::string& bytes) {
  std::map<std::string, std::string> out;
  for (auto& [name, data] : ZipEntriesInOrder(bytes)) out[name] = std::move(data);
  return out;
}

}  // namespace bud::test
