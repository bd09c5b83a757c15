# Sourced by .ci/run (bash). Finds, in this machine's own apt sources, the URI that serves a suite
# of the Debian archive (e.g. bookworm, component main), so CI adds bookworm-backports from the same
# mirror the machine already uses instead of a host name written into this repository.
#
#   debian_archive_uri SUITE [APT_DIR=/etc/apt] [LISTS_DIR=/var/lib/apt/lists]
#
# prints the URI (without a trailing slash) and returns 0, or returns 1 when no source serves SUITE.

# Every URI of an enabled `deb` source with SUITE and component main, in the order apt reads them:
# sources.list, then sources.list.d/*.list (one-line format) and *.sources (deb822) by file name.
apt_source_uris() {
  local suite=$1 etc=$2 file
  local files=()
  [ -f "$etc/sources.list" ] && files+=("$etc/sources.list")
  for file in "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
    [ -f "$file" ] && files+=("$file")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  # apt orders the parts by file name whatever their format; sources.list stays first.
  local main=() parts=()
  for file in "${files[@]}"; do
    if [ "$file" = "$etc/sources.list" ]; then main+=("$file"); else parts+=("$file"); fi
  done
  if [ ${#parts[@]} -gt 0 ]; then mapfile -t parts < <(printf '%s\n' "${parts[@]}" | LC_ALL=C sort); fi
  for file in "${main[@]}" "${parts[@]}"; do
    case "$file" in
      *.sources) deb822_uris "$suite" "$file" ;;
      *) one_line_uris "$suite" "$file" ;;
    esac
  done
}

# One-line format: `deb [option=value ...] URI SUITE COMPONENT...`; `#` starts a comment.
one_line_uris() {
  local suite=$1 file=$2 line i
  local words=()
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    read -ra words <<<"$line"
    [ ${#words[@]} -ge 4 ] && [ "${words[0]}" = deb ] || continue
    i=1
    if [[ ${words[1]} == \[* ]]; then
      # Options in brackets may span several words: skip to the one that closes them.
      while [ "$i" -lt ${#words[@]} ] && [[ ${words[$i]} != *\] ]]; do i=$((i + 1)); done
      i=$((i + 1))
    fi
    [ $((i + 2)) -lt ${#words[@]} ] || continue
    [ "${words[$((i + 1))]}" = "$suite" ] || continue
    if has_word main "${words[@]:$((i + 2))}"; then echo "${words[$i]%/}"; fi
  done <"$file"
}

# deb822 format: stanzas of `Field: value` lines separated by blank lines; a line starting with
# white space continues the previous field; `#` lines are comments; `Enabled: no` turns one off.
deb822_uris() {
  local suite=$1 file=$2 line field="" value
  local -A stanza=()
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line =~ ^[[:space:]]*$ ]]; then
      deb822_stanza_uris
      stanza=()
      field=""
    elif [[ $line == \#* ]]; then
      continue
    elif [[ $line =~ ^[[:space:]] ]]; then
      [ -n "$field" ] && stanza[$field]+=" $line"
    elif [[ $line =~ ^([A-Za-z0-9-]+):(.*)$ ]]; then
      field=${BASH_REMATCH[1],,}
      value=${BASH_REMATCH[2]}
      stanza[$field]=$value
    fi
  done <"$file"
  deb822_stanza_uris
}

# Uses `stanza` and `suite` from deb822_uris (bash's dynamic scope).
deb822_stanza_uris() {
  [ ${#stanza[@]} -gt 0 ] || return 0
  local types=() suites=() components=() uris=() uri
  read -ra types <<<"${stanza[types]-}"
  read -ra suites <<<"${stanza[suites]-}"
  read -ra components <<<"${stanza[components]-}"
  read -ra uris <<<"${stanza[uris]-}"
  [ "$(echo "${stanza[enabled]-yes}" | tr -d '[:space:]')" != no ] || return 0
  has_word deb "${types[@]}" && has_word "$suite" "${suites[@]}" && has_word main "${components[@]}" || return 0
  for uri in "${uris[@]}"; do echo "${uri%/}"; done
}

has_word() {
  local want=$1 w
  shift
  for w in "$@"; do [ "$w" = "$want" ] && return 0; done
  return 1
}

# The Release file apt downloaded for URI's SUITE, if any (apt names list files after the URI
# without its scheme, `/` turned into `_`).
release_file() {
  local uri=$1 suite=$2 lists=$3 base f
  base=${uri#*://}
  base=${base//\//_}
  for f in "$lists/${base}_dists_${suite}_InRelease" "$lists/${base}_dists_${suite}_Release"; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

debian_archive_uri() {
  local suite=$1 etc=${2:-/etc/apt} lists=${3:-/var/lib/apt/lists}
  local candidates=() uri release unverified=""
  mapfile -t candidates < <(apt_source_uris "$suite" "$etc")
  [ ${#candidates[@]} -gt 0 ] || return 1
  # A third-party repository may call its suite "bookworm" too: prefer the source whose downloaded
  # Release file says `Origin: Debian`; without one (no lists yet), the first source apt reads wins.
  for uri in "${candidates[@]}"; do
    if release=$(release_file "$uri" "$suite" "$lists"); then
      if grep -q '^Origin: Debian$' "$release"; then echo "$uri"; return 0; fi
    elif [ -z "$unverified" ]; then
      unverified=$uri
    fi
  done
  [ -n "$unverified" ] || return 1
  echo "$unverified"
}
