#!/usr/bin/env node
import "../dist/doe-emu.mjs";
