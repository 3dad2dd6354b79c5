#!/usr/bin/env node
/** `xenstore-chmod`: see tools/xenstore/cli.ts. */
import { main } from "../cli.js";

process.exitCode = await main("xenstore-chmod", process.argv.slice(2));
