// httpov radiosity research: a room lit by the sun through a window.
// Radiosity only; no ambient. Still: clock = 0. Fly-through: room_fly.ini
// moves only the camera with the clock (geometry and lights are static).
#version 3.7;
global_settings {
  assumed_gamma 1.0
  max_trace_level 5
  radiosity {
    pretrace_start 0.08
    pretrace_end 0.01
    count 60
    nearest_count 5
    error_bound 0.8
    recursion_limit 2
    low_error_factor 0.5
    gray_threshold 0.0
    minimum_reuse 0.015
    brightness 1
  }
}
#default { finish { ambient 0 diffuse 0.75 } }

camera {
  location <-1.6 + 2.2*clock, 1.5, -2.6 + 0.6*clock>
  look_at  <0.3 - 0.4*clock, 1.0, 1.5>
  angle 70
}

// The sun, outside, shining through the window in the left wall.
light_source { <-12, 9, 4> color rgb <1.0, 0.95, 0.85> * 2.5 }

// Room 6 x 3 x 6 with a window cut in the wall at x = -3.
difference {
  box { <-3.1, -0.1, -3.1>, <3.1, 3.1, 3.1> }
  box { <-3, 0, -3>, <3, 3, 3> }
  box { <-3.2, 1.0, 0.0>, <-2.9, 2.4, 1.6> }
  pigment { color rgb <0.85, 0.82, 0.75> }
}
// A red floor rug and a blue wall panel to bleed colour.
box { <-1.0, 0, 0.5>, <1.5, 0.02, 2.2> pigment { color rgb <0.8, 0.15, 0.1> } }
box { <2.95, 0.5, -1.0>, <3.0, 2.5, 1.8> pigment { color rgb <0.1, 0.25, 0.8> } }
// Objects.
sphere { <0.8, 0.5, 1.2>, 0.5 pigment { color rgb <0.9, 0.9, 0.9> } }
box { <-0.3, 0, 2.0>, <0.5, 1.1, 2.8> rotate y*20 pigment { color rgb <0.3, 0.7, 0.3> } }
cylinder { <1.9, 0, -0.6>, <1.9, 1.6, -0.6>, 0.25 pigment { color rgb <0.9, 0.8, 0.3> } }
