# Install-time script (see CMakeLists.txt): writes lib/systemd/system/<unit>.service from
# systemd/<unit>.service.in with @BUD_BINDIR@ and @BUD_DOCDIR@ set to absolute paths under the
# install prefix. Honours DESTDIR.
foreach(dir BINDIR DOCDIR)
  if(IS_ABSOLUTE "${BUD_INSTALL_${dir}}")
    set(BUD_${dir} "${BUD_INSTALL_${dir}}")
  else()
    set(BUD_${dir} "${CMAKE_INSTALL_PREFIX}/${BUD_INSTALL_${dir}}")
  endif()
endforeach()
set(unit_dir "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
foreach(unit bud-registry bud-broker bud-ip)
  message(STATUS "Installing: ${unit_dir}/${unit}.service")
  configure_file("${BUD_UNIT_SOURCE_DIR}/${unit}.service.in" "${unit_dir}/${unit}.service" @ONLY)
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${unit_dir}/${unit}.service")
endforeach()
