// house_check: measures the house rules of docs/architecture.md in C++ sources (STYLE.md 11):
//   - no class or struct with more than 20 methods or more than 20 data members;
//   - no function of 80 lines or more;
//   - the methods of each class are defined in one .cc file only.
// Usage: house_check [--allow FILE] DIR...   (every .h and .cc under each DIR)
// An allow file lists known exceptions, one a line: "class NAME", "function NAME" or
// "split NAME", with '#' comments; they are reported as pending, not as failures. An exception
// that no longer occurs is reported too, so the list only shrinks. Exit status: 0 when nothing
// but allowed exceptions was found, 1 otherwise, 2 on bad usage.
//
// Limitations: a small scanner, not a compiler. It strips comments, literals and preprocessor
// lines, then follows braces: a brace whose head (the text since the last ';', '{' or '}')
// names a namespace opens a namespace, one naming class/struct opens a type, and one whose head
// holds a parameter list, outside a function, opens a function. Member declarations are told
// apart by a '(' before any '=' or '{' once template arguments are removed. Deleted functions
// and static data are not counted.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

constexpr int kMaxMethods = 20;
constexpr int kMaxData = 20;
constexpr int kMaxFunctionLines = 80;  // a function of this many lines or more is too long

// Comments, string and character literals and preprocessor lines blanked; newlines kept.
std::string Strip(const std::string& in) {
  std::string out(in.size(), ' ');
  size_t i = 0;
  bool line_start = true;
  while (i < in.size()) {
    const char c = in[i];
    if (c == '\n') {
      out[i++] = '\n';
      line_start = true;
      continue;
    }
    if (line_start && c == '#') {  // a directive, with its continuation lines
      while (i < in.size() && !(in[i] == '\n' && in[i - 1] != '\\')) {
        if (in[i] == '\n') out[i] = '\n';
        ++i;
      }
      continue;
    }
    if (c != ' ' && c != '\t') line_start = false;
    if (c == '/' && i + 1 < in.size() && in[i + 1] == '/') {
      while (i < in.size() && in[i] != '\n') ++i;
      continue;
    }
    if (c == '/' && i + 1 < in.size() && in[i + 1] == '*') {
      i += 2;
      while (i + 1 < in.size() && !(in[i] == '*' && in[i + 1] == '/')) {
        if (in[i] == '\n') out[i] = '\n';
        ++i;
      }
      i += 2;
      continue;
    }
    if (c == 'R' && i + 1 < in.size() && in[i + 1] == '"') {  // raw string R"d( ... )d"
      size_t open = in.find('(', i);
      std::string delim = ")" + in.substr(i + 2, open - i - 2) + "\"";
      size_t end = in.find(delim, open);
      end = end == std::string::npos ? in.size() : end + delim.size();
      out[i] = '"';
      for (size_t k = i; k < end; ++k) {
        if (in[k] == '\n') out[k] = '\n';
      }
      i = end;
      continue;
    }
    if (c == '"' ||
        (c == '\'' && !(i > 0 && std::isxdigit(static_cast<unsigned char>(in[i - 1]))))) {
      out[i++] = c;
      while (i < in.size() && in[i] != c) {
        if (in[i] == '\\')
          ++i;
        else if (in[i] == '\n')
          out[i] = '\n';
        ++i;
      }
      if (i < in.size()) out[i++] = c;
      continue;
    }
    out[i] = c;
    ++i;
  }
  return out;
}

std::string Trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\n");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\n");
  return s.substr(a, b - a + 1);
}

// Removes balanced template argument lists: "std::map<a, b<c>> x" -> "std::map x".
std::string DropTemplateArgs(const std::string& s) {
  std::string out;
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '<' && (i + 1 >= s.size() || s[i + 1] != '<') && (out.empty() || out.back() != '<') &&
        out.find("operator") == std::string::npos) {
      ++depth;
      continue;
    }
    if (c == '>' && depth > 0) {
      --depth;
      continue;
    }
    if (depth == 0) out += c;
  }
  return out;
}

// Access specifiers and attributes at the front of a member declaration.
std::string DropAccess(std::string head) {
  static const std::regex access(R"(^\s*(public|private|protected)\s*:)");
  while (std::regex_search(head, access))
    head = std::regex_replace(head, access, "", std::regex_constants::format_first_only);
  return Trim(head);
}

struct ClassStats {
  std::string file;
  int line = 0;
  int methods = 0;
  int data = 0;
};

struct Scope {
  enum Kind { kNamespace, kType, kFunction, kBlock } kind;
  std::string name;  // type: qualified name
  int start_line = 0;
};

struct Findings {
  std::map<std::string, ClassStats> classes;
  std::vector<std::tuple<std::string, std::string, int, int>>
      long_functions;                                       // name, file, line, lines
  std::map<std::string, std::set<std::string>> defined_in;  // class -> .cc files
};

// The name declared by a function head: the qualified identifier before its parameter list.
std::string FunctionName(const std::string& head) {
  std::string h = DropTemplateArgs(head);
  size_t paren = h.find('(');
  if (h.compare(0, 8, "operator") == 0 || h.find("operator") != std::string::npos) {
    size_t op = h.find("operator");
    if (op < paren) paren = h.find('(', h.find_first_not_of(" ", op + 8) + 1);
  }
  if (paren == std::string::npos) return "";
  size_t end = paren;
  while (end > 0 && h[end - 1] == ' ') --end;
  size_t begin = end;
  while (begin > 0 && (std::isalnum(static_cast<unsigned char>(h[begin - 1])) ||
                       h[begin - 1] == '_' || h[begin - 1] == ':' || h[begin - 1] == '~')) {
    --begin;
  }
  return h.substr(begin, end - begin);
}

bool LooksLikeFunction(const std::string& head) {
  std::string h = DropTemplateArgs(head);
  size_t paren = h.find('(');
  if (paren == std::string::npos) return false;
  size_t eq = h.find('=');
  if (eq != std::string::npos && eq < paren && h.find("operator") == std::string::npos)
    return false;
  return !FunctionName(head).empty();
}

int CountDeclarators(const std::string& decl) {
  int depth = 0, n = 1;
  for (char c : DropTemplateArgs(decl)) {
    if (c == '(' || c == '{' || c == '[') ++depth;
    if (c == ')' || c == '}' || c == ']') --depth;
    if (c == ',' && depth == 0) ++n;
  }
  return n;
}

void CountMember(const std::string& raw, ClassStats& stats) {
  std::string head = DropAccess(raw);
  if (head.empty()) return;
  static const std::regex skip(
      R"(^(using|friend|static_assert|typedef|enum|class|struct|union|template\s*<.*>\s*(friend|class|struct))\b)");
  if (std::regex_search(head, skip)) return;
  if (LooksLikeFunction(head)) {
    if (head.find("= delete") == std::string::npos && head.find("=delete") == std::string::npos) {
      ++stats.methods;
    }
    return;
  }
  if (std::regex_search(head, std::regex(R"(^(static|inline static|constexpr static)\b)"))) return;
  stats.data += CountDeclarators(head);
}

void Scan(const fs::path& path, const std::string& shown, Findings& out) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = Strip(buf.str());
  const bool is_cc = path.extension() == ".cc";
  std::vector<Scope> stack;
  std::string head;
  int head_line = 0;
  int line = 1;
  int paren = 0;
  static const std::regex type_head(
      R"(^(template\s*<.*>\s*)?(class|struct)\s+(\[\[[^\]]*\]\]\s*)?([A-Za-z_][\w:]*))");
  auto in_type = [&]() { return !stack.empty() && stack.back().kind == Scope::kType; };
  auto in_code = [&]() {
    return std::any_of(stack.begin(), stack.end(), [](const Scope& s) {
      return s.kind == Scope::kFunction || s.kind == Scope::kBlock;
    });
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') ++line;
    if (c == '(') ++paren;
    if (c == ')') --paren;
    if (paren > 0 || (c != '{' && c != '}' && c != ';')) {
      if (head.empty() && (c == ' ' || c == '\n' || c == '\t')) continue;
      if (head.empty()) head_line = line;
      head += (c == '\n' || c == '\t') ? ' ' : c;
      continue;
    }
    const std::string h = Trim(head);
    if (c == ';') {
      if (in_type()) CountMember(h, out.classes[stack.back().name]);
    } else if (c == '{') {
      Scope s{Scope::kBlock, "", head_line ? head_line : line};
      std::smatch m;
      const std::string dh = DropAccess(h);
      if (in_code()) {
        s.kind = Scope::kBlock;
      } else if (std::regex_search(h, std::regex(R"((^|\s)namespace(\s|$)|^extern\s+")"))) {
        s.kind = Scope::kNamespace;
      } else if (std::regex_search(dh, m, type_head) && dh.find('(') == std::string::npos) {
        s.kind = Scope::kType;
        std::string name = m[4];
        if (in_type()) name = stack.back().name + "::" + name;
        s.name = name;
        auto& st = out.classes[name];
        st.file = shown;
        st.line = s.start_line;
      } else if (LooksLikeFunction(dh)) {
        s.kind = Scope::kFunction;
        s.name = FunctionName(dh);
        if (in_type()) {
          CountMember(h, out.classes[stack.back().name]);
          s.name = stack.back().name + "::" + s.name;
        } else if (is_cc && s.name.find("::") != std::string::npos) {
          out.defined_in[s.name.substr(0, s.name.rfind("::"))].insert(shown);
        }
      } else if (in_type()) {
        CountMember(h, out.classes[stack.back().name]);  // a data member's brace initialiser
        s.kind = Scope::kBlock;
      }
      stack.push_back(s);
      // A data member with a brace initialiser ends at its ';', not here.
    } else if (c == '}' && !stack.empty()) {
      Scope s = stack.back();
      stack.pop_back();
      if (s.kind == Scope::kFunction) {
        const int lines = line - s.start_line + 1;
        if (lines >= kMaxFunctionLines)
          out.long_functions.emplace_back(s.name, shown, s.start_line, lines);
      }
      if (s.kind == Scope::kBlock && in_type()) {  // skip to the ';' of "int x{0};"
        size_t semi = text.find_first_of(";{}", i + 1);
        if (semi != std::string::npos && text[semi] == ';') {
          for (size_t k = i + 1; k < semi; ++k) line += text[k] == '\n';
          i = semi;
        }
      }
    }
    head.clear();
    head_line = 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> dirs;
  std::string allow_file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--allow" && i + 1 < argc)
      allow_file = argv[++i];
    else if (!a.empty() && a[0] == '-') {
      std::cerr << "usage: house_check [--allow FILE] DIR...\n";
      return 2;
    } else
      dirs.push_back(a);
  }
  if (dirs.empty()) {
    std::cerr << "usage: house_check [--allow FILE] DIR...\n";
    return 2;
  }
  std::set<std::string> allowed, seen;
  if (!allow_file.empty()) {
    std::ifstream in(allow_file);
    if (!in) {
      std::cerr << "house_check: cannot read " << allow_file << "\n";
      return 2;
    }
    std::string l;
    while (std::getline(in, l)) {
      l = Trim(l.substr(0, l.find('#')));
      if (!l.empty()) allowed.insert(l);
    }
  }
  Findings f;
  for (const auto& d : dirs) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(d)) {
      const auto ext = e.path().extension();
      if (e.is_regular_file() && (ext == ".h" || ext == ".cc")) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& p : files) Scan(p, p.string(), f);
  }
  int failures = 0, pending = 0;
  auto report = [&](const std::string& key, const std::string& what) {
    if (allowed.contains(key)) {
      seen.insert(key);
      ++pending;
      std::cout << "pending (allowed): " << what << "\n";
    } else {
      ++failures;
      std::cout << "FAIL: " << what << "\n";
    }
  };
  int classes = 0;
  for (const auto& [name, s] : f.classes) {
    ++classes;
    if (s.methods > kMaxMethods || s.data > kMaxData) {
      report("class " + name, "class " + name + " (" + s.file + ":" + std::to_string(s.line) +
                                  ") has " + std::to_string(s.methods) + " methods and " +
                                  std::to_string(s.data) + " data members (at most " +
                                  std::to_string(kMaxMethods) + " and " + std::to_string(kMaxData) +
                                  ")");
    }
  }
  for (const auto& [name, file, line, lines] : f.long_functions) {
    report("function " + name, "function " + name + " (" + file + ":" + std::to_string(line) +
                                   ") has " + std::to_string(lines) + " lines (fewer than " +
                                   std::to_string(kMaxFunctionLines) + " allowed)");
  }
  for (const auto& [cls, files] : f.defined_in) {
    if (files.size() > 1) {
      std::string list;
      for (const auto& x : files) list += (list.empty() ? "" : ", ") + x;
      report("split " + cls, "the methods of " + cls + " are defined in " +
                                 std::to_string(files.size()) + " files: " + list);
    }
  }
  for (const auto& a : allowed) {
    if (!seen.contains(a))
      std::cout << "note: allowed exception '" << a << "' no longer occurs; remove it\n";
  }
  std::cout << "house_check: " << classes << " classes, " << f.long_functions.size()
            << " long function(s); " << failures << " failure(s), " << pending << " pending\n";
  return failures == 0 ? 0 : 1;
}
