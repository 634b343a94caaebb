#!/bin/sh
# Upper-case a file: the transform step of the quickstart.
tr '[:lower:]' '[:upper:]' < "$1"
